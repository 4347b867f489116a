#include "cli/cli.h"

int main(int argc, char** argv) { return egress::cli::run(argc, argv); }
