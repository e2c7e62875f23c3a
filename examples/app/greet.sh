#!/bin/sh
echo "${GREETING:-hello} (built at stage $(hostname))"
