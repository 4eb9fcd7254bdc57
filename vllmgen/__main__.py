from vllmgen.cli import main

main()
