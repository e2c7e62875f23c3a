FROM parity-base
RUN --mount=type=tmpfs,target=/t touch /t/x
RUN --mount=type=cache,target=/c echo hi > /c/x
RUN --mount=type=bind,source=hello.txt,target=/h cat /h > /copied
