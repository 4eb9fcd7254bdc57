from vllmgen.cli.entry import main

main()
