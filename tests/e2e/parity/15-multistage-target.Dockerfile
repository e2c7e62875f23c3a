# parity-target: child
FROM parity-base AS builder
ENV STAGE=builder
WORKDIR /src
COPY hello.txt .
RUN cp hello.txt copy.txt
USER 1000:1000
LABEL from=builder
FROM builder AS child
RUN true
EXPOSE 8080
FROM parity-base
COPY --from=builder /src/copy.txt /out/
COPY --from=child /src/hello.txt /out/h.txt
CMD ["cat", "/out/copy.txt"]
