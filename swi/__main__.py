from swi.cli import main

main()
