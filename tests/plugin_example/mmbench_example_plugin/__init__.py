"""An example plugin: a product-of-experts VAE written against mmbench's public API only."""
