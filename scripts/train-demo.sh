#!/usr/bin/env bash
# The rest-demo recipe end to end: synthetic corpus -> prepared clips -> VAE and SpeechAE -> segments -> teacher
# -> student with ASD (and the "w/o ASD" student for the ablation) -> the exported checkpoint -> evaluation. The
# mouth-opening expert that evaluation reads lip-sync with ships as rest_core/mouth_expert.safetensors (retrain it with
# `python -m rest_core train expert --config configs/mouth-expert.toml --data runs/expert-data --out runs/expert`).
# Run it again after an interruption: finished corpus clips and prepared data are kept, training stages resume
# from their last state. RUNS (default runs/demo) holds everything; DEVICE picks cpu/cuda (default: auto).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
RUNS=${RUNS:-runs/demo}
DEVICE=${DEVICE:-auto}
WORKERS=${WORKERS:-$(nproc)}
CONFIGS=configs/rest-demo
MODEL=${MODEL:-models/rest-demo.safetensors}

rest() { echo "+ python -m rest_core $*" >&2; "$PY" -m rest_core "$@"; }

# 1. corpus: training seeds 0..1199 (5 s each, a new identity per clip)
rest synth --out "$RUNS/corpus/train" --count 1200 --first-seed 0 --seconds 5 --workers "$WORKERS"

# 2. clips: the whole 256 px frames (the corpus frames its faces at any size and place) and the speech windows
[ -f "$RUNS/data/clips/index.json" ] || rest prepare clips --videos "$RUNS/corpus/train" --out "$RUNS/data"

# 3. the frozen encoders, the VAE (the long one) first
rest train vae --config $CONFIGS/vae.toml --data "$RUNS/data" --out "$RUNS/vae" --device "$DEVICE"
# the decoder alone, tuned to spread each latent frame's motion over its 8 frames (same latents)
rest train vae --config $CONFIGS/vae-decoder.toml --init "$RUNS/vae/vae.safetensors" --data "$RUNS/data" \
    --out "$RUNS/vae-decoder" --device "$DEVICE"
rest train speechae --config $CONFIGS/speechae.toml --data "$RUNS/data" --out "$RUNS/speechae" --device "$DEVICE"

# 4. training segments: the reference and 3 chunks, encoded once, starting every 2 latent frames (0.64 s)
[ -f "$RUNS/data/segments/index.json" ] || rest prepare latents --data "$RUNS/data" --vae "$RUNS/vae/vae.safetensors" \
    --speech-ae "$RUNS/speechae/speech_ae.safetensors" --chunks 3 --stride 2 --device "$DEVICE"

# 5. teacher, then the students from its weights
rest train teacher --config $CONFIGS/teacher.toml --data "$RUNS/data" --out "$RUNS/teacher" --device "$DEVICE"
rest train student --config $CONFIGS/student.toml --data "$RUNS/data" --out "$RUNS/student" --device "$DEVICE" \
    --init "$RUNS/teacher/dit.safetensors" --teacher "$RUNS/teacher/dit.safetensors"
rest train student --config $CONFIGS/student.toml --data "$RUNS/data" --out "$RUNS/student-noasd" --device "$DEVICE" \
    --init "$RUNS/teacher/dit.safetensors" --no-con --no-smo

# 6. the held-out corpora, made only now so that training starts sooner: held-out seeds from 1,000,000 (8 s clips)
#    and 2,000,000 (60 s streams), and 60 s streams of the held-out style families (drawing styles the training
#    generator never produces)
rest synth --out "$RUNS/corpus/heldout" --count 8 --first-seed 1000000 --seconds 8 --workers "$WORKERS"
rest synth --out "$RUNS/corpus/heldout-60s" --count 4 --first-seed 2000000 --seconds 60 --workers "$WORKERS"
for family in halftone watercolour pixel duotone; do
    rest synth --out "$RUNS/corpus/families-60s/$family" --looks "$family" --count 2 --first-seed 4000000 \
        --seconds 60 --workers "$WORKERS"
done

# 7. the checkpoint (Joint CFG 2 by default: where this small model lip-syncs best, docs/MODEL_CARD.md), and its
#    evaluation
rest train export --vae "$RUNS/vae-decoder/vae.safetensors" --speech-ae "$RUNS/speechae/speech_ae.safetensors" \
    --dit "$RUNS/student/dit.safetensors" --cfg 2 --out "$MODEL"
rest eval --checkpoint "$MODEL" --clips "$RUNS/corpus/heldout" --streams "$RUNS/corpus/heldout-60s" \
    --families "$RUNS/corpus/families-60s" --photos \
    --teacher "$RUNS/teacher/dit.safetensors" --no-asd "$RUNS/student-noasd/dit.safetensors" --out docs
