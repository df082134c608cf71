"""Latent-diffusion multimodal models: unimodal autoencoders, then a score model over their concatenated latents.

base    ``LatentDiffusionVAE``: the two stages, the latents' standardisation, encode/decode/generation
mld     MLD (Bounoua, Franzese & Michiardi, Entropy 2024): deterministic autoencoders, multi-time masked diffusion
sbmae   SBM-AE (Wesego & Rooshenas, TMLR 2024): unimodal VAEs or regularised autoencoders, a joint score model
"""
