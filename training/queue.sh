#!/bin/bash
# The project's training queue, in order: each run resumes where it stopped (a finished run exits at once), so
# after a stop, start it again. Run directories and logs go under OUT (default ~/irstd-runs), outside the repo.
#   nohup bash training/queue.sh >> ~/irstd-runs/queue.log 2>&1 &
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-$HOME/irstd-runs}
mkdir -p "$OUT"
# Finished and recorded (their numbers in bench/results/ or their weights shipped), so no longer queued:
# irsam_ablation_{wpmd,wpmd-open,no-wpmd}, irsam_ablation_{wpmd-open,no-wpmd}_seed{1,2}, lrrnet_small_sirst-v1{,_trainval},
# irsam_pretrain, irsam_sirst-v1, irsam_pretrain_no-wpmd, irsam_sirst-v1_no-wpmd, irstd_diff_sirst-v1.
# An entry is a config's stem, or stem@N for a repeat of that run with seed N (named stem_seedN).
# LRRNet-small's distillation (issue 16).
for entry in lrrnet_small_kd_sirst-v1; do
  c=${entry%@*}; args=(--config "training/configs/$c.yaml" --out-dir "$OUT"); log=$c
  if [[ $entry == *@* ]]; then args+=(--seed "${entry#*@}"); log=${c}_seed${entry#*@}; fi
  echo "$(date -u +%FT%TZ) start $log"
  .venv/bin/python -m training.train "${args[@]}" >> "$OUT/$log.log" 2>&1 \
    || { echo "$(date -u +%FT%TZ) $log failed (see $OUT/$log.log)"; exit 1; }
  echo "$(date -u +%FT%TZ) done $log"
done
