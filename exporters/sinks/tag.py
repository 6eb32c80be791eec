"""Docker's `tag` log option: `{{.ID}}`, `{{.Name}}`, ... rendered per container.

Docker renders the tag with Go templates over logger.Info (daemon/logger/loggerutils/log_tag.go).
We support the fields and methods users put in tags; anything else is refused at start by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from agent.docker.models import Container
from exporters.sinks.base import SinkConfigError

_FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")

# Field/method name -> value for a container; hostname is the Docker host's (Info.Hostname()).
_FIELDS: dict[str, Callable[[Container, str], str]] = {
    "ID": lambda c, h: c.id[:12],
    "FullID": lambda c, h: c.id,
    "ContainerID": lambda c, h: c.id,
    "Name": lambda c, h: c.name,
    "ContainerName": lambda c, h: "/" + c.name,
    "ImageID": lambda c, h: c.image_id.removeprefix("sha256:")[:12],
    "ImageFullID": lambda c, h: c.image_id,
    "ContainerImageID": lambda c, h: c.image_id,
    "ImageName": lambda c, h: c.image,
    "ContainerImageName": lambda c, h: c.image,
    "Command": lambda c, h: c.command,
    "Hostname": lambda c, h: h,
    "DaemonName": lambda c, h: "docker",
}


class Tag:
    """A compiled tag template."""

    def __init__(self, template: str) -> None:
        for m in _FIELD.finditer(template):
            if m.group(1) not in _FIELDS:
                raise SinkConfigError(
                    f"log-opt tag={template!r}: unknown field .{m.group(1)} "
                    f"(known: {', '.join('.' + k for k in sorted(_FIELDS))})"
                )
        rest = _FIELD.sub("", template)
        if "{{" in rest or "}}" in rest:
            raise SinkConfigError(f"log-opt tag={template!r}: only {{{{.Field}}}} placeholders are supported")
        self.template = template
        self._cache: dict[str, str] = {}

    def render(self, container: Container, hostname: str = "") -> str:
        """The tag for a container (cached per container id: tags are per container, not per line)."""
        got = self._cache.get(container.id)
        if got is None:
            got = _FIELD.sub(lambda m: _FIELDS[m.group(1)](container, hostname), self.template)
            if len(self._cache) > 4096:  # containers come and go; bound the cache
                self._cache.clear()
            self._cache[container.id] = got
        return got
