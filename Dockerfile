# dockwatch agent image.
#
#   docker build -t dockwatch .
#   docker run -d --name dockwatch -p 9105:9105 \
#     -v /var/run/docker.sock:/var/run/docker.sock:ro \
#     -v /proc:/host/proc:ro \
#     -v /var/lib/docker:/host/var/lib/docker:ro \
#     -v dockwatch-state:/var/lib/dockwatch \
#     --cap-drop ALL dockwatch
#
# No privileges, no pid: host, no added capabilities: the agent reads
# /host/proc/<pid>/net/* of each container's process (docs/run.md says why each mount is there).
# Written for the classic builder and BuildKit alike (no heredocs, no --mount).

# Any Debian-like image with Python >= 3.11 and its venv module; CI builds a debootstrapped one.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# The interpreter is `python3` on Debian and both `python3` and `python` on the official images.
# The collector's C module (agent/_procnet.c) needs a C compiler and Python's headers, in this
# stage only: the runtime stage gets the built module, not the compiler. A base without them gets
# them from apt (the official python images carry their own headers; Debian's python3 needs
# python3-dev).
RUN py="$(command -v python3 || command -v python)" \
 && inc="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
 && pkgs="" \
 && { command -v gcc >/dev/null || pkgs="gcc libc6-dev"; } \
 && { [ -e "$inc/Python.h" ] || pkgs="$pkgs python3-dev"; } \
 && if [ -n "$pkgs" ]; then \
      apt-get update -q \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && "$py" -m venv /opt/dockwatch
ENV PATH=/opt/dockwatch/bin:$PATH
# Dependencies first, so code changes reuse this layer: exactly the versions and files of
# requirements.lock (pip-compile --generate-hashes of pyproject.toml, setuptools for the build
# included), so two builds of one commit install the same bytes; a file whose hash is not in the
# lock is refused.
COPY requirements.lock ./
RUN pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY exporters ./exporters
COPY setup.py ./
# pip and setuptools are only needed to build: drop them so the runtime venv is just the agent.
# setup.py builds the C module as optional (installing without a compiler still works); the
# image must have it, so a build that lost it fails here.
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation . \
 && (cd / && python -c "from agent import fastproc; assert fastproc.C, 'agent._procnet was not built'") \
 && python -m pip uninstall -y -q setuptools pip \
 && find /opt/dockwatch -name __pycache__ -prune -exec rm -rf {} + \
 && dockwatch --version

FROM ${BASE_IMAGE}
ARG BASE_IMAGE=python:3.12-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="dockwatch" \
      org.opencontainers.image.description="Per-container network, connection and log agent for Docker hosts and swarms; Prometheus metrics on :9105" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
COPY --from=build /opt/dockwatch /opt/dockwatch
# State (log checkpoints) lives here; mount a volume over it. Sticky and world-writable so it
# works both as root without capabilities (no DAC override) and as a non-root --user.
RUN mkdir -p /var/lib/dockwatch && chmod 1777 /var/lib/dockwatch
# Defaults for the documented mounts; each may be overridden by the same variable or a flag.
# The socket is the agent's own default (unix:///var/run/docker.sock) and deliberately not set
# here. With no socket mounted the agent says so (the fix in one line) and /readyz answers 503;
# sidecar mode is only ever chosen by --sidecar.
ENV PATH=/opt/dockwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DOCKWATCH_PATH_PROCFS=/host/proc \
    DOCKWATCH_PATH_DOCKER_ROOT=/host/var/lib/docker \
    DOCKWATCH_PATH_STATE=/var/lib/dockwatch
# Root (uid 0) by default: the socket (root:docker 0660), Docker's data root (0710) and the
# json logs (0640) are root's. Capabilities are not needed (run with --cap-drop ALL); metrics
# alone also work as any --user that has the socket's group (docs/run.md, "Running as non-root").
USER 0
EXPOSE 9105
# /healthz on the port from DOCKWATCH_WEB_LISTEN_ADDRESS, over TLS when DOCKWATCH_WEB_CONFIG_FILE
# asks for it (set these variables, not the flags, to move or protect it). A 401 or a refused
# client certificate still shows the agent answering (exporters/prometheus/healthcheck.py).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-m", "exporters.prometheus.healthcheck"]
ENTRYPOINT ["/opt/dockwatch/bin/dockwatch", "run"]
