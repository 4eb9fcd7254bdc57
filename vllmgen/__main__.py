from vllmgen.entry import main

main()
