"""One module per bundle format, each with its `SPEC` (`bundles.common.FormatSpec`); `bundles.registry`
lists them."""
