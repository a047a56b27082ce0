#!/usr/bin/env bash
# Prepares the real faces that benchmarks/gpu_real_run.sh trains on, in .faces/ at the repository root (ignored
# by git; the device machine has no network and takes at most 64 MiB a call): the first COUNT images of FOLDER,
# in name order, and the anime-face detector for the detection rate.
#   benchmarks/gpu_faces.sh FOLDER [COUNT=6000] [DETECTOR=FOLDER/../lbpcascade_animeface.xml]
# 6,000 96 px JPEG crops take about 47 MB. FACES names another destination folder (the tests use one).
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 FOLDER [COUNT] [DETECTOR]" >&2
  exit 2
fi
folder=$1
count=${2:-6000}
detector=${3:-$(dirname "$folder")/lbpcascade_animeface.xml}
[[ -d $folder ]] || { echo "$0: no folder $folder" >&2; exit 1; }
[[ -f $detector ]] || { echo "$0: no detector file $detector (give its path as the third argument)" >&2; exit 1; }
mapfile -d '' -t images < <(find "$folder" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) \
  -print0 | sort -z)
[[ ${#images[@]} -gt 0 ]] || { echo "$0: no JPEG or PNG images in $folder" >&2; exit 1; }
faces=${FACES:-$(cd "$(dirname "$0")/.." && pwd)/.faces}
if [[ -z ${FACES:-} && -d "$(dirname "$faces")/.git" ]]; then
  exclude="$(dirname "$faces")/.git/info/exclude"
  grep -qxF '/.faces/' "$exclude" 2>/dev/null || echo '/.faces/' >> "$exclude"
fi
rm -rf "$faces" && mkdir -p "$faces/images"
cp -t "$faces/images" "${images[@]:0:count}"
cp "$detector" "$faces/lbpcascade_animeface.xml"
echo "$(find "$faces/images" -type f | wc -l) images and the detector in $faces ($(du -sh "$faces" | cut -f1))"
