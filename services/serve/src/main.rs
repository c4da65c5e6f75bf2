fn main() -> std::process::ExitCode {
    tributary_serve::main()
}
