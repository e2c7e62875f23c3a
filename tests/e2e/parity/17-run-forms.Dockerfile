FROM parity-base
RUN echo shell > /a
RUN ["/bin/sh", "-c", "echo exec > /b"]
RUN true
RUN echo "quoted  spaces" > /c && \
    echo continued >> /c
