#!/usr/bin/env python3
"""Summarise `cargo bench --bench core` (and `--bench peers`) as markdown tables.

Reads the mean (and, for a noisy machine, the median) of every benchmark from
target/criterion/<id>/new/estimates.json and prints ns/iter for each id, then the ratios the
performance goals are stated in (computed from the means). Usage:

    python3 benches/report.py [CRITERION_DIR]    # default: target/criterion
"""

import json
import os
import sys

IDS = [
    "seal/typical",
    "seal/3kb",
    "validate/typical",
    "validate/3kb",
    "floor/ring_open/typical",
    "floor/ring_open/3kb",
    "floor/xchacha_crate_open/typical",
    "floor/xchacha_crate_open/3kb",
    "breakdown/base64_decode/typical",
    "breakdown/aead_open/typical",
    "breakdown/postcard_decode/typical",
    "breakdown/revocation_check/typical",
    "revocation/check_miss_random",
    "revocation/check_revoked_hit_random",
    "revocation/check_bumped_user_random",
    "moka/get_miss_random",
    "moka/get_hit_random",
]

# From `cargo bench --bench peers` (printed when present).
PEER_IDS = [
    "peers/sealed_sessions_open/typical",
    "peers/sealed_sessions_validate/typical",
    "peers/paseto_v4_local/typical",
    "peers/jwt_hs256/typical",
    "peers/cookie_private_jar/typical",
    "tower/with_layer/typical",
    "tower/without_layer/typical",
]

BREAKDOWN = [
    "breakdown/base64_decode/typical",
    "breakdown/aead_open/typical",
    "breakdown/postcard_decode/typical",
    "breakdown/revocation_check/typical",
]


def load(root):
    """Map each benchmark's full id to its (mean, median) in nanoseconds."""
    means = {}
    for dirpath, _, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            full_id = json.load(f)["full_id"]
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        means[full_id] = (est["mean"]["point_estimate"], est["median"]["point_estimate"])
    return means


def fmt_ns(ns):
    return f"{ns:,.1f}" if ns < 100 else f"{ns:,.0f}"


def ratio_row(means, label, num, den, goal=""):
    if num in means and den in means:
        value = f"{means[num] / means[den]:.2f}"
    else:
        value = "n/a"
    return f"| {label} | {value} | {goal} |"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")
    both = load(root)
    means = {k: v[0] for k, v in both.items()}
    if not means:
        sys.exit(f"no criterion estimates under {root}; run `cargo bench --bench core` first")

    print("| benchmark | ns/iter (mean) | median |")
    print("|---|---:|---:|")
    for bench_id in IDS:
        if bench_id in both:
            mean, median = both[bench_id]
            print(f"| `{bench_id}` | {fmt_ns(mean)} | {fmt_ns(median)} |")
        else:
            print(f"| `{bench_id}` | missing | |")

    print()
    print("| ratio | value | goal |")
    print("|---|---:|---|")
    for size in ("typical", "3kb"):
        v = f"validate/{size}"
        print(ratio_row(means, f"{v} / floor/ring_open/{size}", v,
                        f"floor/ring_open/{size}", "≤ 2" if size == "typical" else ""))
        print(ratio_row(means, f"{v} / floor/xchacha_crate_open/{size}", v,
                        f"floor/xchacha_crate_open/{size}"))
    print(ratio_row(means, "moka/get_miss_random / revocation/check_miss_random",
                    "moka/get_miss_random", "revocation/check_miss_random"))

    if all(b in means for b in BREAKDOWN) and "validate/typical" in means:
        total = sum(means[b] for b in BREAKDOWN)
        validate = means["validate/typical"]
        print()
        print("| validate/typical breakdown | ns | share of parts |")
        print("|---|---:|---:|")
        for b in BREAKDOWN:
            print(f"| `{b}` | {fmt_ns(means[b])} | {100 * means[b] / total:.0f}% |")
        print(f"| sum of parts | {fmt_ns(total)} | |")
        print(f"| `validate/typical` | {fmt_ns(validate)} | |")
        print(f"| validate − sum (engine glue, measurement noise) | {fmt_ns(validate - total)} | |")

    if any(p in both for p in PEER_IDS):
        print()
        print("| peer benchmark | ns/iter (mean) | median | vs our validate |")
        print("|---|---:|---:|---:|")
        ours = means.get("peers/sealed_sessions_validate/typical")
        for bench_id in PEER_IDS:
            if bench_id in both:
                mean, median = both[bench_id]
                rel = f"{mean / ours:.2f}x" if ours else "n/a"
                print(f"| `{bench_id}` | {fmt_ns(mean)} | {fmt_ns(median)} | {rel} |")


if __name__ == "__main__":
    main()
