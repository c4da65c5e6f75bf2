fn main() -> std::process::ExitCode {
    tributary_ingest::main()
}
