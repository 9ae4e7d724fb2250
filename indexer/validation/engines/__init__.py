"""The engines that measure a suite of variants: whole-model (`suite`) and layer-major (`layered`)."""
