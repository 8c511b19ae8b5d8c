from cad.cli import main

main()
