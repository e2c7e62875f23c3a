FROM alpine
RUN echo crlf \
  continued
ENV A=b
