// tributary: the command line.
#include "cli/commands.h"

int main(int argc, char** argv) { return tributary::cli::Main(argc, argv); }
