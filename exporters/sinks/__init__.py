"""Log sinks named after Docker's logging drivers; SINKS is the table of them."""

from __future__ import annotations

from exporters.sinks.base import Sink
from exporters.sinks.fluentd import FluentdSink
from exporters.sinks.json_file import JsonFileSink
from exporters.sinks.syslog import SyslogSink

# driver name -> Sink class; a new sink is one module plus one line here.
SINKS: dict[str, type[Sink]] = {
    FluentdSink.driver: FluentdSink,
    JsonFileSink.driver: JsonFileSink,
    SyslogSink.driver: SyslogSink,
}
