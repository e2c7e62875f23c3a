//! Parses the Dockerfiles given as arguments and prints the AST or the error.
#![allow(clippy::print_stdout)]

fn main() {
    for path in std::env::args().skip(1) {
        let src = std::fs::read(&path).unwrap();
        match rbuild_dockerfile::parse(&src, &path) {
            Ok(df) => println!("{df:#?}"),
            Err(e) => println!("{e}"),
        }
    }
}
