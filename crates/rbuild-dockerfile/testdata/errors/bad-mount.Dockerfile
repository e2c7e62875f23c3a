FROM alpine
RUN --mount=type=cache,target=/root/.cache,sharing=sometimes \
    pip install -r requirements.txt
