"""Parses an OpenMetrics text scrape on stdin with Prometheus's own parser
(python3-prometheus-client) and prints one JSON object per sample:
{"name", "labels", "value", "type"}. Exits 1 if the text does not parse.
"""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

text = sys.stdin.read()
try:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            print(json.dumps({"name": s.name, "labels": s.labels, "value": s.value, "type": family.type}))
except Exception as e:  # the parser's errors are plain ValueErrors
    print(f"does not parse: {e}", file=sys.stderr)
    sys.exit(1)
