"""Parses a /metrics exposition read from stdin with prometheus_client's
parser of the format named by the first argument, and prints its metric
families as JSON. A parser that refuses the input fails the script.

  text         the Prometheus text format 0.0.4 (a lax parser: the Rust
               test checks what it made of the input, e.g. no untyped family)
  openmetrics  OpenMetrics 1.0 (a strict parser: # EOF, names, types)
"""

import json
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

PARSERS = {"text": text_families, "openmetrics": openmetrics_families}


def main():
    parse = PARSERS[sys.argv[1]]
    families = [
        {
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "samples": [[s.name, s.labels, s.value] for s in family.samples],
        }
        for family in parse(sys.stdin.read())
    ]
    json.dump(families, sys.stdout)


if __name__ == "__main__":
    main()
