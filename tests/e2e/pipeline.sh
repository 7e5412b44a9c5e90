# pipeline.mk: stages run in order, settings stamps rerun exactly what a
# changed setting shapes, and the score rule scores a predictions folder.
. tests/lib.sh
d=$(scratch pipeline)
mk() { make --no-print-directory -f pipeline.mk BIN="$BIN" RUN="$d/run" DATA=demo DEMO_CASES=3 "$@" 2>&1; }
ran() { grep -oE "^$BIN/[a-z-]+" | sed "s|^$BIN/||" | sort | tr '\n' ' '; }

out=$(mk exemplars | ran)
[ "$out" = "exemplar-sampler loader " ] && pass first_run_runs_loader_and_sampler || fail first_run_runs_loader_and_sampler "ran: $out"
[ -f "$d/run/exemplars.h5" ] && [ -f "$d/run/exemplars.json" ] && [ -f "$d/run/data/index.json" ] \
  && pass outputs_in_run_folder || fail outputs_in_run_folder "missing outputs in $d/run"
out=$(mk exemplars | ran)
[ -z "$out" ] && pass nothing_reruns_unchanged || fail nothing_reruns_unchanged "ran: $out"
out=$(mk exemplars FRACTION=0.1 | ran)
[ "$out" = "exemplar-sampler " ] && pass fraction_reruns_sampler_only || fail fraction_reruns_sampler_only "ran: $out"
out=$(mk exemplars FRACTION=0.1 SAMPLER_STRATEGY=uniform | ran)
[ "$out" = "exemplar-sampler " ] && pass strategy_reruns_sampler_only || fail strategy_reruns_sampler_only "ran: $out"
out=$(mk exemplars FRACTION=0.1 SAMPLER_STRATEGY=uniform SEED=5 | ran)
[ "$out" = "exemplar-sampler loader " ] && pass seed_reruns_loader_and_sampler || fail seed_reruns_loader_and_sampler "ran: $out"

# Predictions equal to the truth score DSC 1 for every class present.
mkdir -p "$d/pred"
/usr/bin/python3 - "$d/run/data/test" "$d/pred" <<'PY'
import glob, os, sys, h5py
for f in glob.glob(os.path.join(sys.argv[1], "*.h5")):
    with h5py.File(f, "r") as t, h5py.File(os.path.join(sys.argv[2], os.path.basename(f)), "w") as p:
        for k in ("schema", "dataset", "provenance", "case_id", "spacing", "affine", "version"):
            p.attrs[k] = t.attrs[k]
        p.attrs["schema"] = "fewsam.prediction"
        p["label"] = t["label"][()]
        p["classes"] = t["classes"][()]
PY
out=$(mk score FRACTION=0.1 SAMPLER_STRATEGY=uniform SEED=5 PRED="$d/pred" SAM=)
ran_again=$(ran <<<"$out")
if [ -f "$d/run/scores/scores.json" ] && /usr/bin/python3 -c "
import json,sys; s=json.load(open('$d/run/scores/scores.json'))
assert s['mean_dsc'] == 1.0, s['mean_dsc']" 2>/dev/null; then pass score_rule_scores_predictions
else fail score_rule_scores_predictions "$(tail -3 <<<"$out")"; fi
[ "$ran_again" = "scorer " ] && pass score_reruns_only_scorer || fail score_reruns_only_scorer "ran: $ran_again"
expect_error device_cuda_without_the_cuda_build "DEVICE=cuda: .*/none/trainer is missing" \
  make --no-print-directory -f pipeline.mk BIN="$BIN" RUN="$d/run" DATA=demo DEVICE=cuda CUDA_BIN="$d/none" pipeline
expect_error device_unknown "DEVICE=tpu: expected cpu or cuda" \
  make --no-print-directory -f pipeline.mk BIN="$BIN" RUN="$d/run" DATA=demo DEVICE=tpu pipeline
# With a checkpoint: trainer, then the zero-shot and the fine-tuned
# predictions, each scored; ITERS reruns what training shapes, PROMPT reruns
# the training (its prompts follow) and both predictions.
W="$SHARED/golden/tiny.safetensors"
[ -f "$W" ] || { skip pipeline_with_a_checkpoint "no $W"; finish; }
T="BATCH=1 TRAIN_BACKEND=ref"
out=$(mk pipeline SAM="$W" ITERS=3 $T | ran)
[ "$out" = "exemplar-sampler loader predictor predictor scorer scorer trainer " ] && pass sam_runs_trainer_predictors_and_scorers \
  || fail sam_runs_trainer_predictors_and_scorers "ran: $out"
[ -f "$d/run/train/checkpoint.safetensors" ] && [ -f "$d/run/train/train.jsonl" ] && [ -f "$d/run/zeroshot/index.json" ] \
  && [ -f "$d/run/predictions/index.json" ] && [ -f "$d/run/scores-zeroshot/scores.md" ] && [ -f "$d/run/scores/scores.md" ] \
  && pass predictions_and_scores_written || fail predictions_and_scores_written "missing outputs in $d/run"
grep -q "zero-shot DSC" "$d/run/scores/scores.md" && grep -q '"lora":.*checkpoint.safetensors' "$d/run/predictions/index.json" \
  && grep -q '"lora": null' "$d/run/zeroshot/index.json" && pass table_shows_zero_shot_beside_fine_tuned \
  || fail table_shows_zero_shot_beside_fine_tuned "no zero-shot row or --lora missing"
out=$(mk pipeline SAM="$W" ITERS=4 $T | ran)
[ "$out" = "predictor scorer trainer " ] && pass iters_reruns_trainer_predictor_scorer_only \
  || fail iters_reruns_trainer_predictor_scorer_only "ran: $out"
out=$(mk pipeline SAM="$W" ITERS=4 $T | ran)
[ -z "$out" ] && pass nothing_reruns_after_iters || fail nothing_reruns_after_iters "ran: $out"
out=$(mk pipeline SAM="$W" ITERS=4 $T PROMPT=box | ran)
[ "$out" = "predictor predictor scorer scorer trainer " ] && pass prompt_reruns_training_and_predictions \
  || fail prompt_reruns_training_and_predictions "ran: $out"
out=$(mk pipeline SAM="$W" ITERS=4 $T PROMPT=box | ran)
[ -z "$out" ] && pass nothing_reruns_after_prompt || fail nothing_reruns_after_prompt "ran: $out"
# Synthesis is on by default: two synthesizer processes stream the samples
# over ipc:// (run/local), and leave when the trainer is done. The number of
# synthesizers changes no result, so it reruns nothing; SYNTH=off (train on
# the exemplars alone) reruns what training shapes.
if grep -q "the trainer said bye" "$d/run/logs/synthesizer-1.log" "$d/run/logs/synthesizer-2.log" 2>/dev/null \
  && grep -q "samples received over ipc://" "$d/run/logs/trainer.log" && [ ! -e "$d/run/synth.sock" ]; then
  pass synthesizers_stream_and_leave
else fail synthesizers_stream_and_leave "no synthesizer logs, no stream, or a socket left in $d/run"; fi
out=$(mk pipeline SAM="$W" ITERS=4 $T PROMPT=box SYNTHESIZERS=0 | ran)
[ -z "$out" ] && pass synthesizer_count_reruns_nothing || fail synthesizer_count_reruns_nothing "ran: $out"
out=$(mk pipeline SAM="$W" ITERS=4 $T PROMPT=box SYNTH=off | ran)
if [ "$out" = "predictor scorer trainer " ] && ! grep -q "samples received" "$d/run/logs/trainer.log"; then
  pass synth_off_reruns_trainer_predictor_scorer_only
else fail synth_off_reruns_trainer_predictor_scorer_only "ran: $out"; fi
out=$(mk pipeline SAM="$W" ITERS=0 $T PROMPT=box)
if [ -z "$(ran <<<"$out")" ] && grep -q "^| DSC" <<<"$out" && ! grep -q "zero-shot DSC" <<<"$out"; then
  pass iters_0_gives_the_zero_shot_table
else fail iters_0_gives_the_zero_shot_table "ran: $(ran <<<"$out"); $(tail -2 <<<"$out")"; fi
# DEVICE=cuda runs the CUDA build's trainer and predictor with --backend
# cuda (a dry run: no GPU needed), and without that build says so.
mkdir -p "$d/cudabin" && printf '#!/bin/sh\nexit 1\n' >"$d/cudabin/trainer" && cp "$d/cudabin/trainer" "$d/cudabin/predictor"
chmod +x "$d/cudabin/trainer" "$d/cudabin/predictor"
out=$(mk -n pipeline SAM="$W" ITERS=5 DEVICE=cuda CUDA_BIN="$d/cudabin")
if grep -q "^run/local .* -- $d/cudabin/trainer " <<<"$out" && [ "$(grep -c "^$d/cudabin/predictor .*--backend cuda" <<<"$out")" = 2 ] \
  && grep -q -- "--backend cuda --ckpt-every" <<<"$out"; then pass device_cuda_uses_the_cuda_build
else fail device_cuda_uses_the_cuda_build "$(grep -E 'trainer|predictor' <<<"$out" | head -3)"; fi
# the GPU's math mode is a setting of both model stages (in their stamps)
mk -n pipeline SAM="$W" ITERS=5 DEVICE=cuda CUDA_BIN="$d/cudabin" CUDA_MATH=bf16 >/dev/null
if grep -q "backend=cuda/bf16" "$d/run/.settings/trainer" && grep -q "backend=cuda/bf16" "$d/run/.settings/predictor" \
  && ! grep -q "bf16" "$d/run/.settings/sampler"; then pass cuda_math_is_a_model_setting
else fail cuda_math_is_a_model_setting "$(cat "$d/run/.settings/trainer")"; fi
finish
