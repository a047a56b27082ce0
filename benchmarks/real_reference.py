"""What the comparison report's metrics give for real images: the floor a generative model can reach.

SWD between the evaluator's reference set (the dataset's first N images, as `--mode=compare` uses) and N other
real images of the same dataset (its last N), and the anime-face detection rate of those N images with the
report's detector settings (images under `eval.detector_min_image_size` enlarged first), and without enlarging.

    python benchmarks/real_reference.py --data=/path/to/faces --image_size=32 --count=1024 \
        --detector=lbpcascade_animeface.xml
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from animejax import config_defaults
from animejax.data import pipeline
from animejax.metrics import detection, swd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="folder of images")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--count", type=int, default=1024)
    parser.add_argument("--detector", default="", help="lbpcascade_animeface.xml (adds the detection rates)")
    args = parser.parse_args()

    data = config_defaults.base_config().data
    data.source, data.path, data.image_size = "folder", args.data, args.image_size
    images, _ = pipeline.load_images(data)
    if len(images) < 2 * args.count:
        raise SystemExit(f"{args.data} has {len(images)} images; --count={args.count} needs twice as many.")
    reference, others = np.asarray(images[: args.count]), np.asarray(images[-args.count :])
    out = {"data": args.data, "image_size": args.image_size, "count": args.count}
    out.update({f"swd{args.count}_real_vs_real/{k.split('/', 1)[1]}": v for k, v in swd.swd(others, reference).items()})
    if args.detector:
        evaluation = config_defaults.eval_group()
        smallest = evaluation.detector_min_image_size
        for name, upscale in (("report_settings", smallest if args.image_size < smallest else None), ("as_is", None)):
            found = detection.detection_rate(others, args.detector, upscale_to=upscale)
            out[f"detection_rate{args.count}_{name}"] = found["rate"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
