# syntax=docker/dockerfile:1
# Ferry as a container image:
#   docker build -t ferry .                         (Node 22; --build-arg NODE_VERSION=24 for Node 24)
#   docker run --rm -v $PWD/ferry.yaml:/config/ferry.yaml:ro -v ferry-state:/state \
#     -e HARBOR_PASSWORD -e TCR_PASSWORD ferry sync --config /config/ferry.yaml
# The entrypoint is `ferry`: the arguments are a ferry command line. The resume journal and the
# daemon's history live in /state (FERRY_STATE_DIR, which overrides transfer.stateDir; --state-dir
# overrides both). Runs as the unprivileged user ferry (uid/gid 10001). See docs/deployment.md.
ARG NODE_VERSION=22

# ---- build: all dependencies, compile TypeScript to dist/
FROM node:${NODE_VERSION}-slim AS build
WORKDIR /opt/ferry
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are here; the build is the next step.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- production dependencies only
FROM node:${NODE_VERSION}-slim AS deps
WORKDIR /opt/ferry
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# ---- runtime
FROM node:${NODE_VERSION}-slim
LABEL org.opencontainers.image.title="ferry" \
      org.opencontainers.image.description="Replication engine for container registries: Harbor, Tencent TCR, Huawei/OTC SWR and any OCI Distribution registry" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production \
    FERRY_STATE_DIR=/state
RUN groupadd --system --gid 10001 ferry \
 && useradd --system --uid 10001 --gid ferry --home-dir /state --no-create-home --shell /usr/sbin/nologin ferry \
 && mkdir -p /config /state \
 && chown ferry:ferry /state
WORKDIR /opt/ferry
COPY --from=deps /opt/ferry/node_modules ./node_modules
COPY --from=build /opt/ferry/dist ./dist
COPY package.json ./
COPY bin ./bin
# Example configs (harbor-to-tcr, harbor-to-swr, daemon), for reference: /opt/ferry/config
COPY config ./config
RUN chmod 0755 bin/ferry.js && ln -s /opt/ferry/bin/ferry.js /usr/local/bin/ferry
USER 10001:10001
WORKDIR /state
VOLUME ["/config", "/state"]
# `ferry daemon` with daemon.listen: 0.0.0.0:8480 (HTTP API, /healthz, /readyz, /metrics, webhooks)
EXPOSE 8480
ENTRYPOINT ["ferry"]
CMD ["--help"]
