"""Parses a Prometheus text exposition (stdin) with the reference client's parser and prints
its samples as JSON: [{"family", "type", "name", "labels", "value"}]. Exits 1 with the
parser's complaint when the text is not valid exposition format."""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    text = sys.stdin.read()
    samples = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                value = sample.value
                samples.append(
                    {
                        "family": family.name,
                        "type": family.type,
                        "name": sample.name,
                        "labels": sample.labels,
                        # JSON has no infinity: the +Inf bucket bound stays a string label.
                        "value": None if math.isnan(value) else value,
                    }
                )
    except Exception as e:  # the parser raises ValueError and friends on bad input
        print(f"not Prometheus text: {e!r}", file=sys.stderr)
        return 1
    json.dump(samples, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
