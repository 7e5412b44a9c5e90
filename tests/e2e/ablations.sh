# make ablations: every comparison in its own run folder, the loader and
# the zero-shot predictor once, one table with every row; a second call
# reruns nothing.
. tests/lib.sh
d=$(scratch ablations)
W="$SHARED/golden/tiny.safetensors"
[ -f "$W" ] || { skip ablations_table "no $W"; finish; }
mk() { make --no-print-directory -f pipeline.mk BIN="$BIN" RUN="$d/run" DATA=demo DEMO_CASES=3 SAM="$W" \
         ITERS=2 BATCH=1 TRAIN_BACKEND=ref SYNTHESIZERS=0 ablations "$@" 2>&1; }
ran() { grep -oE "^$BIN/[a-z-]+" | sed "s|^$BIN/||" | sort | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' '; }

A=$d/run/ablations
ROWS="zero-shot exemplars-3pct synthesis-0.5pct synthesis-1pct synthesis-3pct"
out=$(mk); rc=$?
if [ $rc = 0 ] && [ -f "$A/table.md" ] && [ -f "$A/table.csv" ]; then pass ablations_complete
else fail ablations_complete "exit $rc: $(tail -3 <<<"$out")"; finish; fi

missing=
for r in $ROWS; do
  grep -q "^| $r | " "$A/table.md" || missing+=" md:$r"
  grep -q "^$r," "$A/table.csv" || missing+=" csv:$r"
  s=scores; [ $r = zero-shot ] && s=scores-zeroshot
  [ -f "$A/$r/$s/scores.json" ] || missing+=" run:$r"
done
[ -z "$missing" ] && [ "$(wc -l <"$A/table.csv")" = 6 ] && pass table_has_every_row \
  || fail table_has_every_row "missing:$missing; csv lines: $(wc -l <"$A/table.csv")"
grep -q "^| zero-shot | " <<<"$out" && pass table_printed_at_the_end || fail table_printed_at_the_end "not in the output"
head -1 "$A/table.csv" | grep -q "^experiment,settings,mean_dsc,mean_hd95_mm,mean_hd95_vox,dsc_liver," \
  && /usr/bin/python3 - "$A/table.csv" <<'PY' && pass csv_numbers || fail csv_numbers "$(head -2 "$A/table.csv")"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for r in rows:
    assert 0 <= float(r["mean_dsc"]) <= 1, r
    assert float(r["mean_hd95_mm"]) >= 0, r
PY

# Shared: one loader and one zero-shot prediction; one training per row.
r=$(ran <<<"$out")
[ "$r" = "exemplar-samplerx4 loaderx1 predictorx5 scorerx5 trainerx4 " ] && pass loader_and_zero_shot_once \
  || fail loader_and_zero_shot_once "ran: $r"
[ ! -e "$d/run/.settings" ] && pass main_run_stamps_untouched || fail main_run_stamps_untouched "$d/run/.settings written"

out=$(mk); r=$(ran <<<"$out")
[ -z "$r" ] && grep -q "^| synthesis-1pct | " <<<"$out" && pass second_call_reruns_nothing \
  || fail second_call_reruns_nothing "ran: $r"
expect_error ablations_need_sam "set SAM=" make --no-print-directory -f pipeline.mk BIN="$BIN" RUN="$d/run" \
  DATA=demo SAM= ablations
finish
