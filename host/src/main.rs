fn main() {
    std::process::exit(perf_host::main_with_args(std::env::args_os()));
}
