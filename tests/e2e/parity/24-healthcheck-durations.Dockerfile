FROM parity-base
HEALTHCHECK --interval=90s --timeout=1500ms --start-period=1h --retries=65 CMD ["/bin/true"]
