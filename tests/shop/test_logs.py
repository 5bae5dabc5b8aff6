"""JSON log lines stay one line for any line reader, whatever a client sent."""

from __future__ import annotations

import json
import logging

from shop.logs import JsonFormatter


def test_unicode_line_breaks_in_a_logged_path_are_escaped():
    # Found by the schemathesis run: a cart id with U+0085 split an access-log line in two for
    # str.splitlines(), and with it test_operations' reading of the server log.
    path = "/api/carts/\x85a\u2028b\u2029c\u00e9/items"
    record = logging.LogRecord("shop.http", logging.INFO, __file__, 1, "request", None, None)
    record.fields = {"path": path}
    line = JsonFormatter().format(record)
    assert len(line.splitlines()) == 1
    assert json.loads(line)["path"] == path
    assert "\u00e9" in line  # other text stays as it is
