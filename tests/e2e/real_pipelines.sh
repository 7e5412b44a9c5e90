# The whole experiment on the real cases of ../shared/data with the demo
# model: `make pipeline DATA=brats ... SAM=demo` and DATA=synapse complete on
# CPU and write a score table with a fine-tuned and a zero-shot row. Fewer
# training steps than the defaults keep it to a couple of minutes.
. tests/lib.sh
d=$(scratch real_pipelines)
for data in brats synapse; do
  dir_var=$(tr a-z A-Z <<<"$data")_DIR
  src="$SHARED/data/$data"
  if [ ! -d "$src" ]; then skip "pipeline_$data" "$src missing"; continue; fi
  out=$(make --no-print-directory -f pipeline.mk BIN="$BIN" DATA=$data "$dir_var=$src" SAM=demo \
        RUN="$d/$data" ITERS=40 SYNTHESIZERS=1 2>&1)
  rc=$?
  md="$d/$data/scores/scores.md"
  if [ $rc -ne 0 ]; then fail "pipeline_$data" "exit $rc: $(tail -3 <<<"$out")"
  elif [ ! -f "$md" ] || ! grep -q '^| DSC (%)' "$md" || ! grep -q '^| zero-shot DSC (%)' "$md"; then
    fail "pipeline_$data" "no fine-tuned and zero-shot rows in $md"
  elif [ "$(grep -c '^| DSC (%)' <<<"$out")" != 1 ]; then
    fail "pipeline_$data" "the table should be printed once at the end"
  else pass "pipeline_$data"; fi
done
if [ ! -d "$SHARED/data/synapse" ]; then skip synapse_reference_row "$SHARED/data/synapse missing"
elif grep -q 'SAMed' "$d/synapse/scores/scores.md" 2>/dev/null; then pass synapse_reference_row
else fail synapse_reference_row "no SAMed row in the Synapse table"; fi
finish
