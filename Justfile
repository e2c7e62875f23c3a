# rbuild's everyday commands (the scripts work without just, too).

# Build the demo images end to end against a local registry.
demo:
    scripts/demo

# Run the whole test suite.
test *ARGS:
    scripts/test {{ARGS}}
