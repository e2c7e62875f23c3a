FROM alpine
COPY --form=build /out /out
