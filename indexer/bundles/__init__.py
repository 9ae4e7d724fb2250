"""Coordinate bundles on the user's side: build, load and check a manifest, and protect super weights.

A bundle is the schema-1 JSON manifest documented in `docs/bundles.md` (the service renders the same
manifest in other formats with `bundles`; the safetensors rendering carries it too). The
manifest's model, hash and checks are `contracts.manifest`, the one codec both sides call.

- `build.manifest_from_detection(detection, validation)`: a manifest of a detection and its validation.
- `load.load_bundle(path_or_url)`: a `.json` or `.safetensors` bundle from a file or an http(s) URL; the
  sha256 of its canonical content is checked, and nothing is ever unpickled. `load_bundle("org/name",
  source=...)` asks a `CoordinateSource` (a server's `swi.client.Client`, or
  `swi.catalog_source.LocalCatalog`) instead.
- `bundle.Bundle`: the checked bundle; `bundle.resolve` locates its weights in a model.
- `protect.protect_super_weights(model, bundle)` (or `(model, "org/name", client=source)`): records the
  super weights' exact values, optionally clips the other outliers and keeps the super weights out of the
  quantizer's statistics, lets any quantizer run, then writes the exact originals back: the per-weight
  hold-out no quantization tool offers.
- `hold_out.super_activation_hold_out(model, bundle)`: finds the super activation in each forward pass and
  holds it out of activation quantization (a `hold_out` for
  `indexer.validation.quantize.fake_quantized_activations`).
- `artifacts.check_artifact`: whether a bundle's super weights survived a quantized artifact.

Before touching a model, the bundle is checked against it (commit sha, layer count, tensor shapes and the
stored values): a bundle of another model is a clear `BundleMismatchError`, never a silent no-op.
"""
