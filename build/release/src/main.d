build/release/src/main.o: src/main.c
