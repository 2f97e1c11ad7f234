#!/bin/bash
# The project's training queue, in order: each run resumes where it stopped (a finished run exits at once), so
# after a stop, start it again. Run directories and logs go under OUT (default ~/irstd-runs), outside the repo.
#   nohup bash training/queue.sh >> ~/irstd-runs/queue.log 2>&1 &
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-$HOME/irstd-runs}
mkdir -p "$OUT"
# Finished and recorded (their numbers in bench/results/ or their weights shipped), so no longer queued:
# irsam_ablation_{wpmd,wpmd-open,no-wpmd}, lrrnet_small_sirst-v1{,_trainval}, irsam_pretrain, irsam_sirst-v1,
# irstd_diff_sirst-v1.
for c in lrrnet_small_kd_sirst-v1; do
  echo "$(date -u +%FT%TZ) start $c"
  .venv/bin/python -m training.train --config "training/configs/$c.yaml" --out-dir "$OUT" >> "$OUT/$c.log" 2>&1 \
    || { echo "$(date -u +%FT%TZ) $c failed (see $OUT/$c.log)"; exit 1; }
  echo "$(date -u +%FT%TZ) done $c"
done
