FROM parity-base
CMD echo shell form
ENTRYPOINT ["/bin/echo", "exec"]
