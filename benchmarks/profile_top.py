"""Top functions of a py-spy ``--format raw`` profile (collapsed stacks), by own and total time.

python3 benchmarks/profile_top.py PROFILE.txt [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import pathlib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=pathlib.Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = [
            frame.split(" (")[0] + " " + frame.split("/")[-1].rstrip(")")
            for frame in stack.split(";")
        ]
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    print(f"{samples} samples")
    print("own %   total %  function")
    for frame, count in own.most_common(args.top):
        print(f"{100 * count / samples:5.1f}   {100 * total[frame] / samples:6.1f}  {frame}")
    print("\nby total time:")
    for frame, count in total.most_common(args.top):
        print(f"{100 * count / samples:5.1f}  {frame}")


if __name__ == "__main__":
    main()
