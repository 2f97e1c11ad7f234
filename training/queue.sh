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
# An entry is a config's stem, or stem@N for a repeat of that run with seed N (named stem_seedN).
# The WPMD ablation's repeats first (issue 14: one seed per arm could not tell a 22 % false-alarm
# difference from noise), then LRRNet-small's distillation (issue 16).
for entry in irsam_ablation_wpmd-open@1 irsam_ablation_no-wpmd@1 irsam_ablation_no-wpmd@2 \
             irsam_ablation_wpmd-open@2 lrrnet_small_kd_sirst-v1; do
  c=${entry%@*}; args=(--config "training/configs/$c.yaml" --out-dir "$OUT"); log=$c
  if [[ $entry == *@* ]]; then args+=(--seed "${entry#*@}"); log=${c}_seed${entry#*@}; fi
  echo "$(date -u +%FT%TZ) start $log"
  .venv/bin/python -m training.train "${args[@]}" >> "$OUT/$log.log" 2>&1 \
    || { echo "$(date -u +%FT%TZ) $log failed (see $OUT/$log.log)"; exit 1; }
  echo "$(date -u +%FT%TZ) done $log"
done
