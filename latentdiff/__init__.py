"""Latent-diffusion multimodal models: unimodal autoencoders, then a score model over their concatenated latents.

base     ``LatentDiffusionVAE``: the two stages, the latents' standardisation, encode/decode/generation
mld      MLD (Bounoua, Franzese & Michiardi, Entropy 2024): deterministic autoencoders, multi-time masked diffusion
sbmae    SBM-AE (Wesego & Rooshenas, TMLR 2024): unimodal VAEs or regularised autoencoders, a joint score model
nets     the papers' score networks (MLD's UnetMLP; SBM-AE's latents as an M x 8 x 8 image through a 2-D UNet)
repaint  MLD's default sampler: reverse Euler-Maruyama with RePaint's jumps back
"""
