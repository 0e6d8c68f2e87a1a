from tradews.app.cli import main

main()
