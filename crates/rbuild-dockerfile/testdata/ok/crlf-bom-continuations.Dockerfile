FROM alpine:3.20
RUN echo one \
# a comment inside the continuation

    two \
    three
run echo lower-case keywords work
Run echo mixed case works too (with a warning)
CMD ["sh", "-c", "echo \"json with escapes\" \u00e9"]
CMD [ 'single', 'quotes' ]
