#!/usr/bin/env bash
# The rest-demo recipe end to end: synthetic corpus -> prepared clips -> VAE and SpeechAE -> segments -> teacher
# -> student with ASD (and the "w/o ASD" student for the ablation), each fine-tuned for a nearly clean context ->
# the exported checkpoint -> evaluation. The mouth-opening expert that evaluation reads lip-sync with ships as
# rest_core/eval/mouth_expert.safetensors (retrain it with
# `python -m rest_core train expert --config configs/mouth-expert.toml --data runs/expert-data --out runs/expert`).
# Run it again after an interruption: finished corpus clips and prepared data are kept, training stages resume
# from their last state. RUNS (default runs/demo) holds everything; DEVICE picks cpu/cuda (default: auto).
# A stage whose finished weights are in FINISHED (default stages/rest-demo: float16, committed to the
# repository, `python -m rest_core train finish`) is not trained again: the recipe continues from them on any machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
RUNS=${RUNS:-runs/demo}
DEVICE=${DEVICE:-auto}
WORKERS=${WORKERS:-$(nproc)}
CONFIGS=configs/rest-demo
MODEL=${MODEL:-models/rest-demo.safetensors}
FINISHED=${FINISHED:-stages/rest-demo}

rest() { echo "+ python -m rest_core $*" >&2; "$PY" -m rest_core "$@"; }
# finished STAGE: its weights are committed; part STAGE FILE: where its weights are (committed, else its run's)
finished() { [ -f "$FINISHED/$1.safetensors" ]; }
part() { if finished "$1"; then echo "$FINISHED/$1.safetensors"; else echo "$RUNS/$1/$2"; fi; }
# finish STAGE FILE: its run's part as finished float16 weights, to commit
finish() { finished "$1" || rest train finish --part "$RUNS/$1/$2" --out "$FINISHED/$1.safetensors"; }

# 1. corpus: training seeds 0..1199 (5 s each, a new identity per clip)
rest synth --out "$RUNS/corpus/train" --count 1200 --first-seed 0 --seconds 5 --workers "$WORKERS"

# 2. clips: the whole 256 px frames (the corpus frames its faces at any size and place) and the speech windows
[ -f "$RUNS/data/clips/index.json" ] || rest prepare clips --videos "$RUNS/corpus/train" --out "$RUNS/data" \
    --workers "$WORKERS"

# 3. the frozen encoders, the VAE (the long one) first. It copies the look from the portrait and starts from the plain
#    VAE of the previous rest-demo (committed as vae-plain: its decoder already reads the latents); then its mouth
#    head learns to paint the mouth from one code for every face (vae-mouth: what lets the DiT learn the mouth from
#    the speech; the committed vae stage predates the code, and its weights start the new head at nothing); then the
#    head's motion and the blinks become a code of the same kind (vae-pose: the decoder moves the portrait's head);
#    last the open mouth is drawn where a mask from the portrait says the mouth is (vae-shape: the mouth's heads
#    alone; vae-shape-mask: that mask taught longer)
finished vae || {
    rest train vae --config $CONFIGS/vae.toml --init "$FINISHED/vae-plain.safetensors" --data "$RUNS/data" \
        --out "$RUNS/vae" --device "$DEVICE"
    finish vae vae.safetensors; }
finished vae-mouth || {
    rest train vae --config $CONFIGS/vae-mouth.toml --init "$(part vae vae.safetensors)" --data "$RUNS/data" \
        --out "$RUNS/vae-mouth" --device "$DEVICE"
    finish vae-mouth vae.safetensors; }
finished vae-pose || {
    rest train vae --config $CONFIGS/vae-pose.toml --init "$(part vae-mouth vae.safetensors)" --data "$RUNS/data" \
        --out "$RUNS/vae-pose" --device "$DEVICE"
    finish vae-pose vae.safetensors; }
finished vae-shape || {
    rest train vae --config $CONFIGS/vae-shape.toml --init "$(part vae-pose vae.safetensors)" --data "$RUNS/data" \
        --out "$RUNS/vae-shape" --device "$DEVICE"
    finish vae-shape vae.safetensors; }
finished vae-shape-mask || {
    rest train vae --config $CONFIGS/vae-shape-mask.toml --init "$(part vae-shape vae.safetensors)" \
        --data "$RUNS/data" --out "$RUNS/vae-shape-mask" --device "$DEVICE"
    finish vae-shape-mask vae.safetensors; }
# vae-shape and vae-shape-mask tuned the mouth's heads alone: their encoder and latents are vae-pose's, so the
# segments stay vae-pose's (the latents pass keeps segments made from the weights it is given); the checkpoint gets
# the last of them
ENCODER=$(part vae-pose vae.safetensors)
VAE=$(part vae-shape-mask vae.safetensors)
finished speechae || {
    rest train speechae --config $CONFIGS/speechae.toml --data "$RUNS/data" --out "$RUNS/speechae" --device "$DEVICE"
    finish speechae speech_ae.safetensors; }
SPEECH_AE=$(part speechae speech_ae.safetensors)

# 4. training segments: the clip's first frame as the reference and 3 chunks, starting every 2 latent frames
#    (0.64 s); each clip's stream is encoded once. The pass itself keeps segments made from these same weights and
#    resumes a stopped one (segments from another VAE are made again)
rest prepare latents --data "$RUNS/data" --vae "$ENCODER" --speech-ae "$SPEECH_AE" --chunks 3 --stride 2 \
    --device "$DEVICE"

# 5. teacher, then the students from its weights
finished teacher || {
    rest train teacher --config $CONFIGS/teacher.toml --data "$RUNS/data" --out "$RUNS/teacher" --device "$DEVICE"
    finish teacher dit.safetensors; }
TEACHER=$(part teacher dit.safetensors)
rest train student --config $CONFIGS/student.toml --data "$RUNS/data" --out "$RUNS/student" --device "$DEVICE" \
    --init "$TEACHER" --teacher "$TEACHER"
rest train student --config $CONFIGS/student.toml --data "$RUNS/data" --out "$RUNS/student-noasd" --device "$DEVICE" \
    --init "$TEACHER" --no-con --no-smo
# then each continues from a nearly clean context, as the streaming sampler gives it one: a low-rank fine-tune, so
# the checkpoint stores the students' weights and a small change (docs/TRAINING.md, "The context's noise")
rest train student --config $CONFIGS/student-lowctx-lowrank.toml --data "$RUNS/data" --out "$RUNS/student-lowctx" \
    --device "$DEVICE" --init "$RUNS/student/dit.safetensors" --teacher "$TEACHER"
rest train student --config $CONFIGS/student-lowctx-lowrank.toml --data "$RUNS/data" \
    --out "$RUNS/student-lowctx-noasd" --device "$DEVICE" --init "$RUNS/student-noasd/dit.safetensors" --no-con --no-smo

# 6. the held-out corpora, made only now so that training starts sooner: held-out seeds from 1,000,000 (8 s clips)
#    and 2,000,000 (60 s streams), and 60 s streams of the held-out style families (drawing styles the training
#    generator never produces)
rest synth --out "$RUNS/corpus/heldout" --count 8 --first-seed 1000000 --seconds 8 --workers "$WORKERS"
rest synth --out "$RUNS/corpus/heldout-60s" --count 4 --first-seed 2000000 --seconds 60 --workers "$WORKERS"
for family in halftone watercolour pixel duotone; do
    rest synth --out "$RUNS/corpus/families-60s/$family" --looks "$family" --count 2 --first-seed 4000000 \
        --seconds 60 --workers "$WORKERS"
done

# 7. the checkpoint (Joint CFG 2 by default: where this small model lip-syncs best, docs/MODEL_CARD.md; the context
#    committed at noise level 0.05, the middle of the levels the fine-tune trained it on), and its evaluation
rest train export --vae "$VAE" --speech-ae "$SPEECH_AE" --dit "$RUNS/student-lowctx/dit.safetensors" \
    --dit-from "$RUNS/student/dit.safetensors" --cfg 2 --context-noise 0.05 --out "$MODEL"
rest eval --checkpoint "$MODEL" --clips "$RUNS/corpus/heldout" --streams "$RUNS/corpus/heldout-60s" \
    --families "$RUNS/corpus/families-60s" --photos \
    --teacher "$TEACHER" --no-asd "$RUNS/student-lowctx-noasd/dit.safetensors" --out docs
