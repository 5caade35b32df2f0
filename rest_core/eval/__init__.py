"""Evaluation: how good a trained model is, measured on what it never trained on.

`evaluate` is `python -m rest_core eval` (held-out clips, style families and photographs, with the ablations);
`metrics` the measures it reports; `mouth_expert` the small network that reads how far a mouth is open, with its
shipped weights beside it (`mouth_expert.safetensors`), as SyncNet is the paper's instrument. Training may import
this package (the expert is trained by `train expert`); the core never does.
"""
