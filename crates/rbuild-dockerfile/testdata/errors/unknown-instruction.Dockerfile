FROM alpine
RUN apk add curl
CPOY . /app
