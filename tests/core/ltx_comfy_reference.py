"""Run by test_ltx_import in a fresh process with the real ComfyUI on sys.path: ComfyUI's own LTX-Video VAE
(small, the 0.9.0 layout, causal decoder) with random weights, saved as a Lightricks single file, and its encode and
decode of fixed inputs. Arguments: the ComfyUI folder, the weights file, the inputs-and-outputs file."""

import sys

BLOCKS = [["res_x", 1], ["compress_all", 1], ["res_x_y", 1], ["res_x", 2], ["compress_all", 1], ["res_x_y", 1],
          ["res_x", 1], ["compress_all", 1], ["res_x", 1], ["res_x", 1]]


def main(comfy_dir: str, weights_out: str, io_out: str):
    sys.path.insert(0, comfy_dir)
    sys.argv = [sys.argv[0], "--cpu"]  # ComfyUI's own options: no GPU
    import comfy.options

    comfy.options.enable_args_parsing()
    import torch
    from comfy.ldm.lightricks.vae.causal_video_autoencoder import VideoVAE
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = {"dims": 3, "latent_channels": 128, "blocks": BLOCKS, "norm_layer": "pixel_norm", "patch_size": 4,
              "latent_log_var": "uniform", "causal_decoder": True, "spatial_padding_mode": "zeros"}
    vae = VideoVAE(config=config).eval()
    with torch.no_grad():
        for name, t in vae.state_dict().items():  # ComfyUI's layers skip initialisation
            if "per_channel_statistics" in name:
                t.copy_(torch.rand_like(t) + 0.5 if "std" in name else torch.randn_like(t))
            elif "norm" in name and name.endswith("weight"):
                t.uniform_(0.5, 1.5)
            else:
                t.normal_(0, 0.05)
        video = torch.rand(1, 3, 9, 64, 64) * 2 - 1
        z = vae.encode(video)
        zr = torch.randn(1, 128, 2, 2, 2)
        out = vae.decode(zr)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, weights_out)
    save_file({"video": video, "z": z, "zr": zr, "out": out}, io_out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
