# The base every other case starts from, built FROM scratch by both.
FROM scratch
COPY stubs/ /
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
