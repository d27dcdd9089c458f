# syntax=docker/dockerfile:1
# The image of every Python service, the service named by a build argument. Build context: the repository root
# (skaffold.yaml builds each image this way), e.g.
#   docker build --build-arg SERVICE=orders -t ticketing-orders .
# Multi-stage: uv installs the service's locked dependencies in a build stage; the runtime stage gets the
# virtualenv, the shared library and that service only, and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# Third-party dependencies first, from the lockfile alone (uv needs no other member's pyproject.toml for a frozen
# sync): this layer is rebuilt only when uv.lock or the workspace root changes, not when code does. Everything
# above it is shared by every service's build.
COPY pyproject.toml uv.lock ./
ARG SERVICE
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package "ticketing-${SERVICE:?build with --build-arg SERVICE=<name>}"
# Then the code, in the workspace layout: the service finds its migrations next to its package
# (src/../migrations), and uv installs workspace members editable, pointing at these folders. The service's
# console script gets a second name, ticketing-service, so that one CMD (which takes no build argument) runs it.
COPY libs/common libs/common
COPY services/${SERVICE} services/${SERVICE}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package "ticketing-${SERVICE}" \
 && python -m compileall -q libs/common/src "services/${SERVICE}/src" \
 && ln -s "ticketing-${SERVICE}" .venv/bin/ticketing-service

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
WORKDIR /app
# Who owns the code: root by default, so the service cannot change it; the skaffold `local` profile passes the
# service's uid so that file sync can update sources inside a running container (hot reload). Declared after the
# user, so that the layers above are the same for every service and owner.
ARG SERVICE
ARG CODE_OWNER=0
COPY --from=build /app/.venv /app/.venv
COPY --from=build --chown=${CODE_OWNER}:${CODE_OWNER} /app/libs/common /app/libs/common
COPY --from=build --chown=${CODE_OWNER}:${CODE_OWNER} /app/services/${SERVICE} /app/services/${SERVICE}
# Bytecode is compiled at build time; the root filesystem is read-only in the cluster.
ENV PATH="/app/.venv/bin:${PATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 3000
# The service's entry point, the one `make up` runs (`python -m ticketing_<service>`), under the name every image
# shares. The Deployments call it by its own name: `ticketing-<service> serve`, and `ticketing-<service> migrate` in
# the migration init container.
CMD ["ticketing-service", "serve"]
