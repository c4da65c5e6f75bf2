fn main() -> std::process::ExitCode {
    tributary_sink::main()
}
