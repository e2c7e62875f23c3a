FROM node:20 AS base
ONBUILD COPY package*.json ./
ONBUILD RUN npm ci
ONBUILD HEALTHCHECK NONE

FROM base AS deps
RUN --mount=type=secret,id=npmrc,target=/root/.npmrc,required \
    --mount=type=ssh \
    --mount=type=tmpfs,target=/tmp,size=64m \
    --mount=type=bind,from=base,source=/usr/src,target=/mnt/src,rw \
    --network=none \
    npm run build

FROM scratch
COPY --from=deps --link --chmod=0644 /app/dist/ /
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/tool.tar.gz /tools/
ADD --keep-git-dir=true https://github.com/example/repo.git#v1.0 /src
COPY --exclude=*.md --exclude=docs/ --parents ./pkg/*/go.mod /deps/
